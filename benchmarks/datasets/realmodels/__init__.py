"""The real-model cases (`cases`: composites and restricted views of bundled photos) and models (`models`)."""
