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

#endif
