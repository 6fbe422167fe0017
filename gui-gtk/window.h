/* The application and its one window. */
#ifndef VMSYNC_GTK_WINDOW_H
#define VMSYNC_GTK_WINDOW_H

#include <adwaita.h>
#include "vmsync.h"

/* Runs the application until its window closes; REPO (may be NULL) is added
 * to the configuration first.  Returns the exit status. */
int app_run(const char *repo);

/* Sets W's accessible name, which screen readers read and the tests find. */
void set_accessible_name(GtkWidget *w, const char *name);

/* Widgets every part of the window makes alike. */
/* A left-aligned label for TARGET, whose mnemonic focuses it, appended to
 * BOX; TARGET gets NAME (its own placing is the caller's). */
void field_label(GtkWidget *box, const char *mnemonic, GtkWidget *target, const char *name);
/* A left-aligned wrapping label, appended to BOX. */
GtkLabel *wrapped_label(GtkWidget *box);
void list_box_clear(GtkListBox *list);
/* Escape closes W (window.close), as it closes every dialog of the window. */
void close_on_escape(GtkWindow *w);

#endif
