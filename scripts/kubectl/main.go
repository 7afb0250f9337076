// kubectl, built from the Kubernetes project's own command library (k8s.io/kubectl, pinned in
// go.mod) because no registry this project installs from ships the kubectl binary. The tests use
// its `kubectl kustomize` to render deploy/kubernetes/ exactly as a user's kubectl would.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
)

func main() {
	os.Exit(cli.Run(cmd.NewDefaultKubectlCommand()))
}
