#!/usr/bin/python3
"""Write the ONNX runtime's test fixtures: PyTorch exports and scikit-learn
classifiers written the way skl2onnx writes them.

Models (each with a dynamic batch axis):
  mlp_classifier.onnx  float32 "features" [N, 4] -> "probabilities" float32 [N, 3]
                       (softmax of a two-layer MLP) and "label" int64 [N]
  regressor.onnx       float64 "features" [N, 5] -> "prediction" float64 [N, 1]
  two_inputs.onnx      float32 "numeric" [N, 3] and int64 "category" [N]
                       -> "score" float32 [N, 1] (an embedding of the category
                       added to a linear layer of the numbers)
For each model and batch size 1, 7 and 64, <model>.expected.json holds the
inputs and the outputs PyTorch computes for them.

The scikit-learn classifiers (sklearn_*.onnx, bad_*.onnx) are written by
sklearn_models.py in this directory, which this script runs too; run that
one alone where PyTorch is missing (it needs python3-sklearn instead).

Run with Debian's python3 (python3-torch, python3-onnx, python3-numpy):
  /usr/bin/python3 internal/model/onnx/testdata/generate.py
"""
import json
import os

import numpy as np
import onnx
import torch

import sklearn_models

HERE = os.path.dirname(os.path.abspath(__file__))
torch.manual_seed(11)
rng = np.random.default_rng(11)


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))

    def forward(self, features):
        p = torch.softmax(self.net(features), dim=1)
        return p, torch.argmax(p, dim=1)


class Regressor(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))

    def forward(self, features):
        return self.net(features) * 10.0 + 3.0


class TwoInputs(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3, 1)
        self.embed = torch.nn.Embedding(6, 1)

    def forward(self, numeric, category):
        return self.linear(numeric) + self.embed(category)


def export(model, args, name, inputs, outputs):
    model.eval()
    path = os.path.join(HERE, name + ".onnx")
    dynamic = {n: {0: "batch"} for n in inputs + outputs}
    torch.onnx.export(model, args, path, input_names=inputs, output_names=outputs,
                      dynamic_axes=dynamic, opset_version=17)
    onnx.checker.check_model(onnx.load(path))
    return path


def tolist(t):
    return t.detach().cpu().numpy().tolist()


def main():
    cases = []

    mlp = MLP()
    export(mlp, (torch.zeros(2, 4),), "mlp_classifier", ["features"], ["probabilities", "label"])
    out = []
    for n in (1, 7, 64):
        x = torch.tensor(rng.normal(size=(n, 4)), dtype=torch.float32)
        p, label = mlp(x)
        out.append({"batch": n, "inputs": {"features": tolist(x)}, "outputs": {"probabilities": tolist(p), "label": tolist(label)}})
    cases.append(("mlp_classifier", out))

    reg = Regressor().double()
    export(reg, (torch.zeros(2, 5, dtype=torch.float64),), "regressor", ["features"], ["prediction"])
    out = []
    for n in (1, 7, 64):
        x = torch.tensor(rng.normal(size=(n, 5)), dtype=torch.float64)
        out.append({"batch": n, "inputs": {"features": tolist(x)}, "outputs": {"prediction": tolist(reg(x))}})
    cases.append(("regressor", out))

    two = TwoInputs()
    export(two, (torch.zeros(2, 3), torch.zeros(2, dtype=torch.int64)), "two_inputs", ["numeric", "category"], ["score"])
    out = []
    for n in (1, 7, 64):
        a = torch.tensor(rng.normal(size=(n, 3)), dtype=torch.float32)
        c = torch.tensor(rng.integers(0, 6, size=n), dtype=torch.int64)
        out.append({"batch": n, "inputs": {"numeric": tolist(a), "category": tolist(c)}, "outputs": {"score": tolist(two(a, c))}})
    cases.append(("two_inputs", out))

    for name, out in cases:
        with open(os.path.join(HERE, name + ".expected.json"), "w") as f:
            json.dump(out, f)
    print("torch", torch.__version__, "onnx", onnx.__version__)


if __name__ == "__main__":
    with torch.no_grad():
        main()
    sklearn_models.main()
