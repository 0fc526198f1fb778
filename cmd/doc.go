// Package cmd holds Partita's thin main packages, one folder per binary.
// Each main only parses flags, sets up logging and hands over to a library
// package.
package cmd
