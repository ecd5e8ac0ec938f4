"""Monitoring an area over time: fetch imagery, track sites, check compliance, report."""
