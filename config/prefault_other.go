//go:build !linux

package config

func prefault([]Service) {}
