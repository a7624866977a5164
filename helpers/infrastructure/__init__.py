"""What every command needs and no domain owns: error types and the guarded entry point,
distributed set-up, precision, CPU threads, atomic writes, time decoding, output-path checks and
the shared config-validation pieces."""
