"""`audiotoken eval`: score images against their sounds (AIS, IIS, AIC, FID, KID)."""
