"""What the report pages call: numbers and sentences from the tables (analysis), figures, and checkpoint probes."""
