// Package models embeds the default model, fraud_model, so that a bare
// `modelwatch serve` has a real model to serve. It is laid out like a model
// repository: <model>/config.yaml and <model>/<version>/model.json.
// train_fraud_model.py made the files; testdata/ holds its held-out rows.
package models

import "embed"

// FS holds fraud_model/config.yaml, fraud_model/v1/model.json and the
// training profile fraud_model/v1/profile.json (written by modelwatch
// profile from testdata/train.csv).
//
//go:embed fraud_model/config.yaml fraud_model/v1/model.json fraud_model/v1/profile.json
var FS embed.FS

// Default is the name of the embedded model.
const Default = "fraud_model"
