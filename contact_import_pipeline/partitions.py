"""One dynamic partition per uploaded file; the key is the file's bucket key."""

import dagster as dg

contact_files = dg.DynamicPartitionsDefinition(name="contact_files")
