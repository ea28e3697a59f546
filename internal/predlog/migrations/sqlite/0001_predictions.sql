-- One row per row of a prediction, with its label once it arrives.
-- Times are microseconds since the Unix epoch (UTC):
--   datetime(predicted_at_us / 1000000, 'unixepoch').
-- inputs and outputs are JSON arrays of numbers: the row's features in the
-- model's order; the class probabilities (classifier, in the model's class
-- order) or the predicted values (regressor).
CREATE TABLE predictions (
    request_id      TEXT    NOT NULL,
    row_index       INTEGER NOT NULL,
    predicted_at_us INTEGER NOT NULL,
    model_name      TEXT    NOT NULL,
    model_version   TEXT    NOT NULL,
    inputs          TEXT    NOT NULL,
    predicted_class TEXT,
    outputs         TEXT    NOT NULL,
    label           TEXT,
    labelled_at_us  INTEGER,
    UNIQUE (request_id, row_index)
);

CREATE INDEX predictions_predicted_at ON predictions (predicted_at_us);
