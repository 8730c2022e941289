"""strata's benchmark harness: scenarios, workloads, results and reports."""
