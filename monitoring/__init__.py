"""Monitoring: raw data quality, feature freshness, drift and training/serving skew
(`shopfeast monitor`, docs/monitoring.md). Reads the data directory and Feast through featurestore;
writes reports under DIR/reports/monitoring/."""
