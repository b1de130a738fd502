"""Environment variables that scripts/launch sets for the processes it starts (kept in a module of
their own: the launcher reads them without importing torch or transformers)."""

STATUS_ENV = "TRAINSUITE_LAUNCH_STATUS"  # folder where each process leaves its exit code (rank-R)
COMMAND_ENV = "TRAINSUITE_LAUNCH_COMMAND"  # this launch, for the `continue with: ... --resume` hint
