"""After the deploy: read the service's prediction log, check it for drift against the model's reference statistics,
and turn consented corrections into training data (docs/monitoring.md). Development venv only, never the serve image;
reads the log through contract.prediction_log, never imports train, export or torch."""
