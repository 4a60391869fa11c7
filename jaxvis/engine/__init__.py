"""The engine every method runs on: a `plan` of pieces compiled into chunks of steps, the driver (`optimize`:
progress, NaN policy, checkpoints and resume, sharding), stages run in sequence, sweeps, and the run config."""
