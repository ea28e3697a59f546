"""The tutorials' complete FastAPI + prometheus_client serving example, ported
faithfully for the benchmark: the same endpoints (/predict, /health, /metrics,
/) and the same metrics, with its mock model answering at once (no sleep).

Run: /usr/bin/python3 -m uvicorn app:app --app-dir bench/fastapi --host 127.0.0.1 --port 8001
(Debian's python3-fastapi, python3-uvicorn, python3-prometheus-client).
"""
import random
import time
import uuid
from typing import List, Optional

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel

app = FastAPI(title="ML model server")

MODEL_NAME = "fraud_model"
MODEL_VERSION = "v1"
CLASSES = ["safe", "fraud"]

http_requests_total = Counter("http_requests_total", "Total HTTP requests", ["method", "endpoint", "status"])
http_request_duration_seconds = Histogram("http_request_duration_seconds", "HTTP request latency", ["method", "endpoint"])
model_requests_total = Counter("model_requests_total", "Model inference requests", ["model_name", "model_version", "status"])
model_predictions_total = Counter("model_predictions_total", "Predictions made", ["model_name", "model_version"])
model_prediction_duration_seconds = Histogram(
    "model_prediction_duration_seconds", "Model inference latency", ["model_name", "model_version"],
    buckets=[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0])
model_prediction_errors_total = Counter("model_prediction_errors_total", "Prediction errors", ["model_name", "error_type"])
model_loaded_info = Gauge("model_loaded_info", "Loaded models", ["model_name", "model_version", "model_type"])
model_load_time_seconds = Gauge("model_load_time_seconds", "Model load time", ["model_name", "model_version"])
active_requests = Gauge("active_requests", "Requests in progress", ["model_name"])
model_input_size_bytes = Histogram("model_input_size_bytes", "Request payload size", ["model_name"],
                                   buckets=[100, 1000, 10000, 100000, 1000000])
model_output_size_bytes = Histogram("model_output_size_bytes", "Response payload size", ["model_name"],
                                    buckets=[100, 1000, 10000, 100000, 1000000])
model_predicted_class_total = Counter("model_predicted_class_total", "Predicted classes", ["model_name", "model_version", "class"])
model_prediction_confidence = Histogram("model_prediction_confidence", "Prediction confidence", ["model_name", "model_version"],
                                        buckets=[0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0])


class MockModel:
    """The tutorial's stand-in for a real model: a random class and confidence."""

    def __init__(self):
        start = time.time()
        self.n_features = 6
        model_load_time_seconds.labels(MODEL_NAME, MODEL_VERSION).set(time.time() - start)
        model_loaded_info.labels(MODEL_NAME, MODEL_VERSION, "mock").set(1)

    def predict(self, rows):
        out = []
        for _ in rows:
            p = random.random()
            cls = 1 if p > 0.5 else 0
            out.append((CLASSES[cls], max(p, 1 - p)))
        return out


model = MockModel()


class PredictRequest(BaseModel):
    inputs: List[List[float]]
    model_name: Optional[str] = None
    model_version: Optional[str] = None


@app.middleware("http")
async def metrics_middleware(request: Request, call_next):
    start = time.time()
    response = await call_next(request)
    http_requests_total.labels(request.method, request.url.path, str(response.status_code)).inc()
    http_request_duration_seconds.labels(request.method, request.url.path).observe(time.time() - start)
    return response


@app.post("/predict")
async def predict(req: PredictRequest, request: Request):
    name = req.model_name or MODEL_NAME
    if name != MODEL_NAME:
        model_prediction_errors_total.labels(name, "model_not_found").inc()
        raise HTTPException(status_code=404, detail="model not found")
    body = await request.body()
    model_input_size_bytes.labels(name).observe(len(body))
    active_requests.labels(name).inc()
    start = time.time()
    try:
        if not req.inputs or any(len(r) != model.n_features for r in req.inputs):
            model_prediction_errors_total.labels(name, "invalid_input").inc()
            model_requests_total.labels(name, MODEL_VERSION, "error").inc()
            raise HTTPException(status_code=422, detail="wrong number of features")
        preds = model.predict(req.inputs)
        duration = time.time() - start
        model_prediction_duration_seconds.labels(name, MODEL_VERSION).observe(duration)
        model_requests_total.labels(name, MODEL_VERSION, "success").inc()
        model_predictions_total.labels(name, MODEL_VERSION).inc(len(preds))
        for cls, conf in preds:
            model_predicted_class_total.labels(name, MODEL_VERSION, cls).inc()
            model_prediction_confidence.labels(name, MODEL_VERSION).observe(conf)
        result = {
            "model_name": name,
            "model_version": MODEL_VERSION,
            "request_id": str(uuid.uuid4()),
            "predictions": [{"class": c, "confidence": p} for c, p in preds],
            "latency_ms": duration * 1000,
        }
        if len(preds) == 1:
            result["prediction"], result["confidence"] = preds[0]
        model_output_size_bytes.labels(name).observe(len(str(result)))
        return result
    finally:
        active_requests.labels(name).dec()


@app.get("/health")
async def health():
    return {"status": "healthy", "models_loaded": 1}


@app.get("/metrics")
async def metrics():
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


@app.get("/")
async def root():
    return {"service": "ml-model-server", "models": [MODEL_NAME]}
