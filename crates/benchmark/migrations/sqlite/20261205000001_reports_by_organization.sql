-- ListReports: an organisation's reports, newest first, a page at a time.
CREATE INDEX reports_by_organization ON reports (organization_id, created_at DESC, report_id DESC);
