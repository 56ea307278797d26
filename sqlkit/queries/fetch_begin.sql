-- A fetch runs in a read-only REPEATABLE READ transaction so that the
-- snapshot it reports (fetch_snapshot.sql) is exactly the one its rows were
-- read with (fetch_batch.sql). The three are sent in one round trip.
BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
