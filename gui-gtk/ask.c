/* Questions from a worker, answered on the main loop: see ask.h. */
#include "ask.h"

#include <string.h>

/* On the asking worker's stack: the main loop may use it until FINISHED is
 * set, and never after (the worker returns as soon as it sees it). */
struct pending_question {
    struct ask_line *line;
    const struct question *q;
    GtkWidget *dialog;  /* main loop only */
    const char *answer; /* under the line's lock */
    bool finished;
};

void ask_line_init(struct ask_line *l)
{
    *l = (struct ask_line){0};
    g_mutex_init(&l->lock);
    g_cond_init(&l->answered);
}

void ask_line_clear(struct ask_line *l)
{
    g_mutex_clear(&l->lock);
    g_cond_clear(&l->answered);
}

/* The choice's own string, which outlives the dialog that gave RESPONSE. */
static const char *choice_id(const struct question *q, const char *response)
{
    for (size_t i = 0; i < q->n_choices; i++)
        if (!strcmp(q->choices[i].id, response))
            return q->choices[i].id;
    return q->refuse_id;
}

/* Hands ANSWER to the worker; P is not touched after. */
static void finish(struct pending_question *p, const char *answer)
{
    struct ask_line *l = p->line;
    if (p->dialog)
        g_signal_handlers_disconnect_matched(p->dialog, G_SIGNAL_MATCH_DATA, 0, 0, NULL,
                                             NULL, p);
    if (l->open == p)
        l->open = NULL;
    g_mutex_lock(&l->lock);
    p->answer = answer;
    p->finished = true;
    g_cond_broadcast(&l->answered);
    g_mutex_unlock(&l->lock);
}

static void on_response(AdwMessageDialog *dlg, const char *response, gpointer data)
{
    struct pending_question *p = data;
    finish(p, choice_id(p->q, response));
}

/* Destroyed unanswered (its parent went): the safe answer. */
static void on_destroy(GtkWidget *dlg, gpointer data)
{
    struct pending_question *p = data;
    p->dialog = NULL;
    finish(p, p->q->refuse_id);
}

/* The window the questions belong to; NULL once it is closed. */
static GtkWindow *main_window(void)
{
    GApplication *app = g_application_get_default();
    GList *w = app ? gtk_application_get_windows(GTK_APPLICATION(app)) : NULL;
    for (; w; w = w->next)
        if (ADW_IS_APPLICATION_WINDOW(w->data))
            return w->data;
    return NULL;
}

static GtkWidget *question_dialog(GtkWindow *parent, const struct question *q)
{
    GtkWidget *w = adw_message_dialog_new(parent, q->heading, q->body);
    AdwMessageDialog *dlg = ADW_MESSAGE_DIALOG(w);
    for (size_t i = 0; i < q->n_choices; i++) {
        adw_message_dialog_add_response(dlg, q->choices[i].id, q->choices[i].label);
        adw_message_dialog_set_response_appearance(dlg, q->choices[i].id, q->choices[i].look);
    }
    adw_message_dialog_set_default_response(dlg, q->default_id);
    adw_message_dialog_set_close_response(dlg, q->refuse_id);
    return w;
}

static gboolean show_question(gpointer data)
{
    struct pending_question *p = data;
    GtkWindow *parent = p->line->cancelled ? NULL : main_window();
    if (!parent) {
        finish(p, p->q->refuse_id);
        return G_SOURCE_REMOVE;
    }
    p->dialog = question_dialog(parent, p->q);
    g_signal_connect(p->dialog, "response", G_CALLBACK(on_response), p);
    g_signal_connect(p->dialog, "destroy", G_CALLBACK(on_destroy), p);
    p->line->open = p;
    gtk_window_present(GTK_WINDOW(p->dialog));
    return G_SOURCE_REMOVE;
}

const char *ask_wait(struct ask_line *l, const struct question *q)
{
    struct pending_question p = {.line = l, .q = q};
    g_idle_add(show_question, &p);
    g_mutex_lock(&l->lock);
    while (!p.finished)
        g_cond_wait(&l->answered, &l->lock);
    const char *answer = p.answer;
    g_mutex_unlock(&l->lock);
    return answer;
}

void ask_line_reset(struct ask_line *l) { l->cancelled = false; }

void ask_line_cancel(struct ask_line *l)
{
    l->cancelled = true;
    struct pending_question *p = l->open;
    if (!p)
        return;
    GtkWidget *dlg = p->dialog;
    finish(p, p->q->refuse_id);
    gtk_window_destroy(GTK_WINDOW(dlg));
}
