"""Records to tables: comparison tables, paired statistics, plots, published numbers, the
reference comparison. Reads records only; never imports the engine or the executors."""
