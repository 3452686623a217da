"""The stage runner: one way for the CLI and the KFP components to run a stage."""
