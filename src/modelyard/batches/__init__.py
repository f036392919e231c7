"""Files and batches of the Batch API: uploaded JSONL files, batch jobs and each line's outcome, per key."""
