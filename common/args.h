// args: declarative command-line options shared by every clipc subcommand.
//
// A subcommand lists its options once (name, type, destination, help); args_parse() fills the
// destinations from argv, args_apply_json() from a JSON object with the same keys (the
// `--config FILE` of `clipc train`), and args_print_help() prints the list. An unknown option or
// key is an error that suggests the nearest valid name. Options take `--name value` or
// `--name=value`; ARG_FLAG options take no value (`--flag`, or true/false in JSON); ARG_FLOAT3
// options take the numbers that follow (`--image-mean 0.5 0.5 0.5`).
#ifndef CLIPC_COMMON_ARGS_H
#define CLIPC_COMMON_ARGS_H

#include <stdbool.h>
#include <stdio.h>

typedef enum {
    ARG_STR,    // char *: points into argv or to a copy owned by the args module (never freed)
    ARG_INT,    // long
    ARG_FLOAT,  // double
    ARG_FLAG,   // bool
    ARG_FLOAT3, // double[3]: `--name a b c`, or one value for all three (OpenCLIP's nargs='+' of
                // --image-mean); in JSON a number or an array of 1 or 3. NaN in [0]: unset, left
                // out of args_print's JSON
} arg_type;

typedef struct {
    const char *name;  // without the leading "--", e.g. "batch-size"
    arg_type type;
    void *dest;
    const char *help;
    bool seen;         // set by the parser when the option was given
} arg_spec;

// Parses argv[0..argc) (argv[0] is the first argument, not the program). Positional arguments
// are collected in order into positional[0..*n_positional) (capacity max_positional).
// Returns 0, or -1 with err_msg() set. "--help"/"-h" returns 1.
int args_parse(arg_spec *specs, int n_specs, int argc, char **argv, char **positional,
               int max_positional, int *n_positional);

// Applies the keys of a JSON object (text) as if given on the command line, except for options
// already marked seen (flags override the config file). Keys may use '-' or '_'.
int args_apply_json(arg_spec *specs, int n_specs, const char *json_text, const char *source_name);

// Writes "name: value" lines (the resolved configuration) to f, or a JSON object when json is true.
void args_print(const arg_spec *specs, int n_specs, FILE *f, bool json);

void args_print_help(const arg_spec *specs, int n_specs, const char *usage);

// args_parse for a subcommand `cmd`, which prints the help itself (returns 0) or the error as
// "clipc <cmd>: <message>" (returns 2, the usage-error status). Returns -1 when the command should go on.
int args_parse_command(const char *cmd, const char *usage, arg_spec *specs, int n_specs, int argc, char **argv,
                       char **positional, int max_positional, int *n_positional);

// Splits an OpenCLIP-style '::' list ("a::b::c") into *items (new strings). Returns the count (>= 1).
int args_split_list(const char *list, char ***items);
void args_free_list(char **items, int n);

// Item i (a new string in *out) of the '::' list given to --option, which holds one entry for all n
// things or one per thing. Returns 0, or -1 with err_msg() naming the option and the counts.
int args_list_item(const char *option, const char *list, int i, int n, char **out);

// The candidate nearest to word by edit distance, or NULL when none is close enough to suggest.
const char *args_nearest(const char *word, const char *const *candidates, int n);

#endif
