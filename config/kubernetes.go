package config

// Kubernetes configures the Kubernetes config source (issue 8); this file is owned by that work.
type Kubernetes struct {
	Kubeconfig string `yaml:"kubeconfig"`
}

func (k *Kubernetes) setDefaults() {}

func (k *Kubernetes) validate(v *validator, p string) {}
