// commands: the subcommands of the `clipc` driver. Each takes the arguments after its name and
// returns the process exit status (0 success, 1 failure with a one-line message on stderr,
// 2 usage error).
#ifndef CLIPC_CLI_COMMANDS_H
#define CLIPC_CLI_COMMANDS_H

int cmd_info(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_shards(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_tokenizer(int argc, char **argv);
int cmd_plot(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_benchmark(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_classify(int argc, char **argv);
int cmd_finetune(int argc, char **argv);
int cmd_launch(int argc, char **argv);
int cmd_distill_cache(int argc, char **argv);

#endif
