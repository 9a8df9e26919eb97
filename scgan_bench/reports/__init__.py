"""What a reader sees beside the tables: the HTML report (``report``), figures (``figures``), ranks as
printed (``ranking``) and when a value may be set beside a published one (``comparable``)."""
