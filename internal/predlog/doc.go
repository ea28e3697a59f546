// Package predlog is the prediction log: every prediction the server makes,
// one record per row, written off the request path to a durable store (an
// embedded SQLite file, or PostgreSQL shared by a fleet), where labels that
// arrive later are joined to it by request id and row.
//
// # The table
//
// Both stores keep one table, predictions, with one row per row of a
// prediction, keyed by (request_id, row_index); its label is written beside
// it. The schema is in migrations/ (applied in order at start and recorded
// in schema_migrations):
//
//	request_id       text     the request's id (X-Request-ID or the server's own)
//	row_index        integer  the row within the request's batch, from 0
//	predicted_at     when it was predicted (SQLite: predicted_at_us, microseconds since the Unix epoch)
//	model_name, model_version
//	inputs           the row's features in the model's order (PostgreSQL: double precision[]; SQLite: a JSON array)
//	predicted_class  the predicted class, NULL for a regressor
//	outputs          class probabilities in the model's class order, or the predicted value(s)
//	label            the true label, NULL until it arrives
//	labelled_at      when the label arrived (SQLite: labelled_at_us)
//
// # Queries
//
// A classifier's accuracy per model version over its labelled rows
// (PostgreSQL):
//
//	SELECT model_name, model_version, count(*) AS labelled,
//	       avg((label = predicted_class)::int) AS accuracy
//	FROM predictions WHERE label IS NOT NULL AND predicted_class IS NOT NULL
//	GROUP BY 1, 2;
//
// A training set of the last week's labelled rows, as CSV (psql):
//
//	\copy (SELECT inputs, label FROM predictions WHERE label IS NOT NULL
//	       AND predicted_at > now() - interval '7 days') TO 'train.csv' CSV
//
// The same from the embedded file, with the sqlite3 tool (the file is
// predictions.db in the data directory; WAL mode lets it be read while the
// server writes):
//
//	sqlite3 -csv predictions.db "SELECT inputs, label FROM predictions
//	  WHERE label IS NOT NULL
//	  AND predicted_at_us > (unixepoch('now', '-7 days') * 1000000)"
//
// A feature of the input as a column (SQLite: json_extract(inputs, '$[0]');
// PostgreSQL: inputs[1]).
//
// # Writing
//
// Log is the front the request path calls: Append queues a request's
// records and returns at once; a writer goroutine writes them in batches.
// A full queue, a store that fails after retries, a full spool and a
// shutdown past its deadline each drop records, and every dropped record is
// counted in model_prediction_log_dropped_total by reason. With PostgreSQL,
// batches that cannot be written while it is down wait in a Spool on local
// disk and are replayed when it is back; writes are idempotent on
// (request_id, row_index), so a replay never stores a record twice. A
// PostgreSQL database that does not answer at start is connected to in the
// background while the spool fills.
//
// A Journal on local disk (a file mapped into memory) holds every queued
// record from the moment Append returns until its batch is written, so a
// process killed with SIGKILL loses none of the predictions it answered: the
// next start on the same directory writes them first.
//
// # Labels
//
// The server looks a label's request up in the store (Lookup), checks it
// against the prediction, and writes it with WriteLabels, which labels a row
// only if it has no label yet and says which rows it labelled: the replica
// whose write labelled a row counts it in its metrics, so that a label sent
// twice, or to two replicas at once, is counted once across the fleet. A
// label that reaches the replica that made the prediction before the
// prediction's batch is written waits for it (Log.Sync).
package predlog
