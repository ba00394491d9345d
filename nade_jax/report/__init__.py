"""nade-report: run dirs of a sweep read back as records, aggregated, plotted and rendered."""
