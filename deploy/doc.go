// Package deploy holds meshtrace's Kubernetes manifests as kustomize trees (base/ and overlays/); its tests
// build every overlay with the kustomize library and check each object against the official schemas.
package deploy
