"""The batch engine: executes approved recipes as batches, with deviations and QA release."""
