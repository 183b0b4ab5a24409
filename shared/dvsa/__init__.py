"""The fleet's client for DVSA's Vehicle Recalls API: OAuth token cache and the four calls."""
