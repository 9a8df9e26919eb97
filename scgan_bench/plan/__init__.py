"""The paper as a plan of jobs (``reproduce``: training, evaluation and tables for Tables 1-7) and where
they run (``executors``: this machine or Slurm)."""
