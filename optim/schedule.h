// schedule: learning-rate schedules of OpenCLIP's src/training/scheduler.py (--lr-scheduler),
// evaluated per optimizer step (step 0 is the first update), with the same step indexing.
//
// Warmup, for step < warmup_steps: base_lr * (step + 1) / warmup_steps. Afterwards:
//   cosine          0.5 * (1 + cos(pi * e / es)) * base_lr,  e = step - warmup, es = total - warmup
//   const           base_lr
//   const-cooldown  base_lr until total - cooldown_steps, then
//                   (1 - e / es)^power * (base_lr - end_lr) + end_lr,
//                   e = step - (total - cooldown_steps), es = cooldown_steps
// As in OpenCLIP, a warm-up as long as the run or longer makes every step a warm-up step (the
// cosine never starts), and a cooldown longer than the run starts before step 0.
#ifndef CLIPC_OPTIM_SCHEDULE_H
#define CLIPC_OPTIM_SCHEDULE_H

#include <stdint.h>

typedef enum {
    SCHEDULE_COSINE,
    SCHEDULE_CONST,
    SCHEDULE_CONST_COOLDOWN,
} schedule_kind;

typedef struct {
    schedule_kind kind;
    double base_lr;
    int64_t warmup_steps;
    int64_t total_steps;
    int64_t cooldown_steps;  // const-cooldown: --epochs-cooldown times the steps per epoch
    double cooldown_power;   // --lr-cooldown-power (1: linear)
    double cooldown_end_lr;  // --lr-cooldown-end
} schedule;

// "cosine", "const", "const-cooldown" (OpenCLIP's names); -1 with a message otherwise.
int schedule_kind_parse(const char *name, schedule_kind *kind);
// Checks the values (finite non-negative rate, warm-up >= 0, steps > 0, cooldown steps > 0 for
// const-cooldown, finite cooldown values); -1 with a message if not.
int schedule_check(const schedule *s);
// The learning rate of step (0-based, below total_steps); s must pass schedule_check.
double schedule_lr(const schedule *s, int64_t step);

#endif
