#include "optim/schedule.h"

#include <math.h>
#include <string.h>

#include "common/error.h"

static const char *const kind_names[] = {
    [SCHEDULE_COSINE] = "cosine",
    [SCHEDULE_CONST] = "const",
    [SCHEDULE_CONST_COOLDOWN] = "const-cooldown",
};

int schedule_kind_parse(const char *name, schedule_kind *kind) {
    for (size_t i = 0; i < sizeof kind_names / sizeof *kind_names; i++)
        if (strcmp(name, kind_names[i]) == 0) {
            *kind = (schedule_kind)i;
            return 0;
        }
    return err_set("--lr-scheduler: unknown schedule '%s' (cosine, const, const-cooldown)", name);
}

int schedule_check(const schedule *s) {
    if (!(s->base_lr >= 0) || !isfinite(s->base_lr)) return err_set("schedule: learning rate %g is not a finite non-negative number", s->base_lr);
    if (s->warmup_steps < 0) return err_set("schedule: negative warmup (%lld steps)", (long long)s->warmup_steps);
    if (s->total_steps <= 0) return err_set("schedule: no steps to train (%lld)", (long long)s->total_steps);
    if (s->kind == SCHEDULE_CONST_COOLDOWN) {
        if (s->cooldown_steps <= 0)
            return err_set("schedule: const-cooldown needs cooldown steps (--epochs-cooldown), got %lld",
                           (long long)s->cooldown_steps);
        if (!isfinite(s->cooldown_power) || !isfinite(s->cooldown_end_lr))
            return err_set("schedule: cooldown power and end learning rate must be finite");
    }
    return 0;
}

static double cooldown_lr(const schedule *s, int64_t step) {
    int64_t start = s->total_steps - s->cooldown_steps;
    if (step < start) return s->base_lr;
    double decay = pow(1.0 - (double)(step - start) / (double)s->cooldown_steps, s->cooldown_power);
    return decay * (s->base_lr - s->cooldown_end_lr) + s->cooldown_end_lr;
}

double schedule_lr(const schedule *s, int64_t step) {
    if (step < s->warmup_steps) return s->base_lr * (double)(step + 1) / (double)s->warmup_steps;
    switch (s->kind) {
    case SCHEDULE_COSINE: {
        double e = (double)(step - s->warmup_steps), es = (double)(s->total_steps - s->warmup_steps);
        return 0.5 * (1 + cos(M_PI * e / es)) * s->base_lr;
    }
    case SCHEDULE_CONST:
        return s->base_lr;
    case SCHEDULE_CONST_COOLDOWN:
        return cooldown_lr(s, step);
    }
    return s->base_lr;
}
