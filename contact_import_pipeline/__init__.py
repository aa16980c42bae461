"""contact-import: a Dagster pipeline that imports contact CSV files into a CRM contacts table."""
