"""Per-page logic and Plotly figures: pure functions of DataFrames and run folders, tested without a browser."""
