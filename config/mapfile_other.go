//go:build !linux

package config

func loadMapped(string) (*Config, error, bool) { return nil, nil, false }
