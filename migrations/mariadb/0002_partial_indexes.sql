-- PostgreSQL only (partial indexes on tasks.workflow_id and tasks.idempotency_key).
-- Nothing changes here; the version keeps every provider's schema history alike.
SELECT 1;
