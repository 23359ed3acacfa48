// clipc plot RUN_DIR: draws the curves of a training run (RUN_DIR/metrics.jsonl) to PNGs.
#include <stdio.h>

#include "common/args.h"
#include "common/error.h"
#include "plot/metrics_plot.h"
#include "plot/plot.h"
#include "cli/commands.h"

int cmd_plot(int argc, char **argv) {
    char *out_dir = NULL;
    arg_spec specs[] = {
        {"out", ARG_STR, &out_dir, "folder for the PNGs (default RUN_DIR/plots)", false},
    };
    const int n_specs = (int)(sizeof specs / sizeof specs[0]);
    const char *usage = "clipc plot RUN_DIR [--out DIR]";
    char *positional[1];
    int n_positional = 0;
    int parsed = args_parse(specs, n_specs, argc, argv, positional, 1, &n_positional);
    if (parsed == 1) {
        args_print_help(specs, n_specs, usage);
        return 0;
    }
    if (parsed != 0 || n_positional != 1) {
        fprintf(stderr, "clipc plot: %s\nusage: %s\n", parsed ? err_msg() : "expected RUN_DIR",
                usage);
        return 2;
    }
    if (!plot_built()) {
        fprintf(stderr, "clipc plot: this clipc was built without plotting (cairo or fontconfig not found when it was configured)\n");
        return 1;
    }
    metrics_plot_report rep;
    int rc = metrics_plot_run(positional[0], out_dir, &rep);
    for (int i = 0; i < rep.n_warnings; i++)
        fprintf(stderr, "clipc plot: warning: %s\n", rep.warnings[i]);
    if (rep.n_malformed > rep.n_warnings)
        fprintf(stderr, "clipc plot: warning: %d more malformed lines skipped\n",
                rep.n_malformed - rep.n_warnings);
    for (int i = 0; i < rep.n_written; i++) printf("%s\n", rep.written[i]);
    if (rc != 0) fprintf(stderr, "clipc plot: %s\n", err_msg());
    metrics_plot_report_free(&rep);
    plot_free_caches();
    return rc ? 1 : 0;
}
