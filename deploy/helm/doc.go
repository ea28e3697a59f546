// Package helm holds the tests of modelwatch's Helm chart (./modelwatch),
// its prometheus-adapter rules and the Kubernetes scrape job of
// deploy/prometheus/kubernetes. It is a module of its own so that Helm's and
// Kubernetes's libraries, which only these tests need, stay out of the
// server's dependencies.
package helm
