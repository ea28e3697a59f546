#!/usr/bin/python3
"""Write scikit-learn classifiers as ONNX graphs the way skl2onnx writes them.

skl2onnx itself is not packaged for Debian, so this script fits the models
with scikit-learn and writes their parameters into the ai.onnx.ml operators
skl2onnx emits (skl2onnx/operator_converters/linear_classifier.py,
decision_tree.py, random_forest.py and zip_map.py):

  LinearClassifier    binary: coefficients [-w, w], intercepts [-b, b],
                      post_transform LOGISTIC; multinomial: multi_class 1,
                      post_transform SOFTMAX, then Normalizer(L1)
  TreeEnsembleClassifier  leaf weights are the leaf's class fractions divided
                      by the number of trees; a binary model keeps the
                      positive class's weight only
  default outputs     output_label (label through Cast to int64, or Identity
                      for strings) and output_probability, a ZipMap:
                      seq(map(int64, float)) or seq(map(string, float))
  zipmap=False        label and probabilities [N, n_classes] straight from
                      the classifier (through Normalizer where there is one)

Every model takes "X" float32 [N, 4]. For batch sizes 1, 7 and 64,
<model>.expected.json holds the inputs and what scikit-learn's own predict
and predict_proba answer for them, with the model's classes_.

sklearn_logreg_binary_int_mlonly.onnx is the same model with ai.onnx.ml
operators only (the label straight from the classifier) and no default
opset imported, which the server must add for the Identity that replaces
the ZipMap.

The bad_*.onnx models are refused at load: a sequence of tensors, a ZipMap
with integer labels declared as a map with string keys, and a ZipMap with
the same label twice; bad_zipmap_width loads but every run is refused (a
ZipMap of 3 labels over the 4 columns of X).

Run with Debian's python3 (python3-sklearn, python3-onnx, python3-numpy):
  /usr/bin/python3 internal/model/onnx/testdata/sklearn_models.py
"""
import json
import os

import numpy as np
import onnx
from onnx import TensorProto, helper
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

HERE = os.path.dirname(os.path.abspath(__file__))
OPSETS = [helper.make_opsetid("", 15), helper.make_opsetid("ai.onnx.ml", 3)]
ML = "ai.onnx.ml"


def training_data(rng, labels):
    x = rng.normal(size=(300, 4)).astype(np.float32)
    score = x[:, 0] + 0.5 * x[:, 1] - x[:, 2] + rng.normal(scale=0.7, size=300)
    edges = np.quantile(score, np.linspace(0, 1, len(labels) + 1)[1:-1])
    y = np.array([labels[i] for i in np.searchsorted(edges, score)])
    return x, y


def linear_classifier(clf, label, probs):
    """The nodes skl2onnx writes for a LogisticRegression."""
    classes = list(clf.classes_)
    attrs = {"coefficients": clf.coef_.flatten().astype(float).tolist(),
             "intercepts": clf.intercept_.astype(float).tolist()}
    if isinstance(classes[0], str):
        attrs["classlabels_strings"] = [str(c) for c in classes]
    else:
        attrs["classlabels_ints"] = [int(c) for c in classes]
    if len(classes) == 2:
        attrs["coefficients"] = [-c for c in attrs["coefficients"]] + attrs["coefficients"]
        attrs["intercepts"] = [-c for c in attrs["intercepts"]] + attrs["intercepts"]
        return [helper.make_node("LinearClassifier", ["X"], [label, probs], domain=ML,
                                 post_transform="LOGISTIC", multi_class=0, **attrs)]
    return [helper.make_node("LinearClassifier", ["X"], [label, "probability_tensor"], domain=ML,
                             post_transform="SOFTMAX", multi_class=1, **attrs),
            helper.make_node("Normalizer", ["probability_tensor"], [probs], domain=ML, norm="L1")]


def tree_classifier(clf, label, probs):
    """The TreeEnsembleClassifier skl2onnx writes for a tree or a forest."""
    classes = list(clf.classes_)
    trees = clf.estimators_ if hasattr(clf, "estimators_") else [clf]
    a = {k: [] for k in ("nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_modes", "nodes_values",
                         "nodes_truenodeids", "nodes_falsenodeids", "nodes_missing_value_tracks_true",
                         "class_treeids", "class_nodeids", "class_ids", "class_weights")}
    for t, est in enumerate(trees):
        tree = est.tree_
        for i in range(tree.node_count):
            leaf = tree.children_left[i] < 0
            a["nodes_treeids"].append(t)
            a["nodes_nodeids"].append(i)
            a["nodes_featureids"].append(0 if leaf else int(tree.feature[i]))
            a["nodes_modes"].append("LEAF" if leaf else "BRANCH_LEQ")
            a["nodes_values"].append(0.0 if leaf else float(tree.threshold[i]))
            a["nodes_truenodeids"].append(0 if leaf else int(tree.children_left[i]))
            a["nodes_falsenodeids"].append(0 if leaf else int(tree.children_right[i]))
            a["nodes_missing_value_tracks_true"].append(0)
            if not leaf:
                continue
            w = tree.value[i][0] / tree.value[i][0].sum() / len(trees)
            if len(classes) == 2:
                w = w[1:]
            for c, v in enumerate(w):
                a["class_treeids"].append(t)
                a["class_nodeids"].append(i)
                a["class_ids"].append(c)
                a["class_weights"].append(float(v))
    if isinstance(classes[0], str):
        a["classlabels_strings"] = [str(c) for c in classes]
    else:
        a["classlabels_int64s"] = [int(c) for c in classes]
    return [helper.make_node("TreeEnsembleClassifier", ["X"], [label, probs], domain=ML,
                             post_transform="NONE", **a)]


def zipmap_type(key):
    t = onnx.TypeProto()
    t.map_type.key_type = key
    t.map_type.value_type.CopyFrom(helper.make_tensor_type_proto(TensorProto.FLOAT, None))
    return helper.make_sequence_type_proto(t)


def write(name, nodes, outputs, opsets=OPSETS):
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 4])
    graph = helper.make_graph(nodes, name, [x], outputs)
    m = helper.make_model(graph, opset_imports=opsets, producer_name="skl2onnx-layout")
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, os.path.join(HERE, name + ".onnx"))


def classifier(name, clf, make_nodes, zipmap, ml_only=False):
    """Write clf as skl2onnx would, or with ml_only, a graph of ai.onnx.ml
    operators only (no Cast on the label), importing no default opset."""
    classes = list(clf.classes_)
    strings = isinstance(classes[0], str)
    label_type = TensorProto.STRING if strings else TensorProto.INT64
    opsets = OPSETS
    if zipmap:
        nodes = make_nodes(clf, "label", "probabilities")
        if ml_only:
            nodes[0].output[0] = "output_label"
            opsets = OPSETS[1:]
        elif strings:
            nodes.append(helper.make_node("Identity", ["label"], ["output_label"]))
        else:
            nodes.append(helper.make_node("Cast", ["label"], ["output_label"], to=TensorProto.INT64))
        if strings:
            zattrs = {"classlabels_strings": [str(c) for c in classes]}
        else:
            zattrs = {"classlabels_int64s": [int(c) for c in classes]}
        nodes.append(helper.make_node("ZipMap", ["probabilities"], ["output_probability"], domain=ML, **zattrs))
        outputs = [helper.make_tensor_value_info("output_label", label_type, [None]),
                   helper.make_value_info("output_probability", zipmap_type(label_type))]
        names = ("output_label", "output_probability")
    else:
        nodes = make_nodes(clf, "label", "probabilities")
        outputs = [helper.make_tensor_value_info("label", label_type, [None]),
                   helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, len(classes)])]
        names = ("label", "probabilities")
    write(name, nodes, outputs, opsets)

    rng = np.random.default_rng(len(name))
    cases = []
    for n in (1, 7, 64):
        x = rng.normal(size=(n, 4)).astype(np.float32)
        label = clf.predict(x).tolist()
        if not strings:
            label = [int(v) for v in label]
        cases.append({"batch": n, "inputs": {"X": x.tolist()},
                      "outputs": {names[0]: label, names[1]: clf.predict_proba(x).tolist()}})
    expected = {"classes": [str(c) for c in classes], "label_output": names[0],
                "probability_output": names[1], "cases": cases}
    with open(os.path.join(HERE, name + ".expected.json"), "w") as f:
        json.dump(expected, f)


def bad_models():
    seq = helper.make_node("SequenceConstruct", ["X"], ["parts"])
    write("bad_sequence_of_tensors", [seq], [helper.make_value_info(
        "parts", helper.make_sequence_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, None)))])

    def zipmap_model(name, labels, key):
        ints = {"classlabels_int64s": labels}
        nodes = [helper.make_node("LinearClassifier", ["X"], ["label", "probabilities"], domain=ML,
                                  coefficients=[0.5] * 4 * len(labels), intercepts=[0.0] * len(labels),
                                  classlabels_ints=labels, post_transform="SOFTMAX", multi_class=1),
                 helper.make_node("ZipMap", ["probabilities"], ["zipped"], domain=ML, **ints)]
        write(name, nodes, [helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
                            helper.make_value_info("zipped", zipmap_type(key))])

    zipmap_model("bad_zipmap_string_keys", [0, 1, 2], TensorProto.STRING)
    # Loads (the server infers no shapes, and no classifier says how many
    # columns the ZipMap takes), but every run is refused: 4 columns, 3 labels.
    write("bad_zipmap_width", [helper.make_node("ZipMap", ["X"], ["zipped"], domain=ML, classlabels_int64s=[0, 1, 2])],
          [helper.make_value_info("zipped", zipmap_type(TensorProto.INT64))])
    zipmap_model("bad_zipmap_duplicate_labels", [0, 1, 1], TensorProto.INT64)


def main():
    rng = np.random.default_rng(13)

    x, y = training_data(rng, [3, 7])
    logreg = LogisticRegression().fit(x, y)
    classifier("sklearn_logreg_binary_int", logreg, linear_classifier, True)
    classifier("sklearn_logreg_binary_int_mlonly", logreg, linear_classifier, True, ml_only=True)
    x, y = training_data(rng, ["bird", "cat", "dog"])
    classifier("sklearn_logreg_multi_str", LogisticRegression().fit(x, y), linear_classifier, True)
    x, y = training_data(rng, ["no", "yes"])
    classifier("sklearn_logreg_binary_str_nozipmap", LogisticRegression().fit(x, y), linear_classifier, False)
    x, y = training_data(rng, ["no", "yes"])
    tree = DecisionTreeClassifier(max_depth=4, random_state=0).fit(x, y)
    classifier("sklearn_tree_binary_str", tree, tree_classifier, True)
    x, y = training_data(rng, [10, 20, 30])
    forest = RandomForestClassifier(n_estimators=4, max_depth=3, random_state=0).fit(x, y)
    classifier("sklearn_forest_multi_int", forest, tree_classifier, True)
    classifier("sklearn_forest_multi_int_nozipmap", forest, tree_classifier, False)
    bad_models()

    import sklearn
    print("sklearn", sklearn.__version__, "onnx", onnx.__version__)


if __name__ == "__main__":
    main()
