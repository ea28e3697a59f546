-- wrk script: POST /predict with one row of the embedded fraud_model's features.
wrk.method = "POST"
wrk.body = '{"inputs": [[250.0, 2, 8, 80.5, 9, 12]]}'
wrk.headers["Content-Type"] = "application/json"
