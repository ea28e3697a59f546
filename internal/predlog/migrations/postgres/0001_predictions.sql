-- One row per row of a prediction, with its label once it arrives.
-- inputs: the row's features in the model's order; outputs: the class
-- probabilities (classifier, in the model's class order) or the predicted
-- values (regressor).
CREATE TABLE predictions (
    request_id      text               NOT NULL,
    row_index       integer            NOT NULL,
    predicted_at    timestamptz        NOT NULL,
    model_name      text               NOT NULL,
    model_version   text               NOT NULL,
    inputs          double precision[] NOT NULL,
    predicted_class text,
    outputs         double precision[] NOT NULL,
    label           text,
    labelled_at     timestamptz,
    PRIMARY KEY (request_id, row_index)
);

CREATE INDEX predictions_predicted_at ON predictions (predicted_at);
