/* Questions the engine asks in the middle of an operation (an unknown host
 * key, another host's lease).  Its callbacks run on the job's worker thread
 * and may block: the worker posts the question to the main loop, which
 * shows it as an AdwMessageDialog, and waits for the answer.
 *
 * A question that cannot be shown, or is still open when its job is
 * cancelled (closing the window cancels every job), gets its refusal, so
 * that the worker never waits for a dialog nobody can see. */
#ifndef VMSYNC_GTK_ASK_H
#define VMSYNC_GTK_ASK_H

#include <adwaita.h>
#include <stdbool.h>
#include <stddef.h>

struct ask_choice {
    const char *id;          /* what ask_wait returns when it is chosen */
    const char *label;       /* with its mnemonic: "Accept _once" */
    AdwResponseAppearance look;
};

struct question {
    const char *heading, *body;
    const struct ask_choice *choices;
    size_t n_choices;
    const char *default_id;  /* Enter */
    const char *refuse_id;   /* Escape, closing, a cancel: the safe answer */
};

struct pending_question;

/* The questions of one repository slot (whose jobs run one at a time, so
 * one question at most is open).  Embedded in the slot. */
struct ask_line {
    GMutex lock;
    GCond answered;
    bool cancelled;                /* main loop only: until the next job */
    struct pending_question *open; /* main loop only: the one shown */
};

void ask_line_init(struct ask_line *l);
void ask_line_clear(struct ask_line *l);

/* On a worker: shows Q on the main loop and waits; returns the chosen
 * choice's id (one of Q's strings), or Q->refuse_id. */
const char *ask_wait(struct ask_line *l, const struct question *q);

/* On the main loop.  A new job's questions are asked again. */
void ask_line_reset(struct ask_line *l);
/* The open question, and every one until the next reset, gets its refusal. */
void ask_line_cancel(struct ask_line *l);

#endif
