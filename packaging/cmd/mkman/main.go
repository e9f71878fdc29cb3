// Command mkman writes lvs-director's man page and bash completion script, generated from
// the binary's own --help output.
//
//	mkman --binary bin/lvs-director --version 1.2.3 --man out/lvs-director.8.gz --completion out/lvs-director.bash
//
// A --man path ending in .gz is gzip'd (gzip -9n); otherwise it is plain roff.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/lvs-director/lvs-director/packaging/internal/helpdoc"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("mkman", flag.ContinueOnError)
	binary := fs.String("binary", "bin/lvs-director", "the lvs-director binary to ask for --help")
	version := fs.String("version", "", "version shown in the man page footer")
	date := fs.String("date", "", "date shown in the man page footer (e.g. 2026-11-24)")
	man := fs.String("man", "", "where to write the man page (.gz: compressed)")
	completion := fs.String("completion", "", "where to write the bash completion script")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *man == "" && *completion == "" {
		fmt.Fprintln(os.Stderr, "mkman: nothing to do: give --man and/or --completion")
		return 2
	}
	if err := write(*binary, *version, *date, *man, *completion); err != nil {
		fmt.Fprintf(os.Stderr, "mkman: %v\n", err)
		return 1
	}
	return 0
}

func write(binary, version, date, man, completion string) error {
	p, err := helpdoc.Collect(helpdoc.BinaryRunner(binary))
	if err != nil {
		return err
	}
	if man != "" {
		page := []byte(helpdoc.Man(p, helpdoc.ManOptions{Version: version, Date: date}))
		if strings.HasSuffix(man, ".gz") {
			if page, err = helpdoc.GzipMan(string(page)); err != nil {
				return fmt.Errorf("gzip: %w", err)
			}
		}
		if err := os.WriteFile(man, page, 0o644); err != nil {
			return err
		}
	}
	if completion != "" {
		if err := os.WriteFile(completion, []byte(helpdoc.Completion(p)), 0o644); err != nil {
			return err
		}
	}
	return nil
}
