/* vmsync key generate|show REPO: the repository's signing key.  The public
 * key line goes to stdout, so that `vmsync key show REPO > office.pub` makes
 * the file that --trust reads; the fingerprint goes to stderr (or both into
 * --json). */
#include "cli.h"

#include <getopt.h>
#include <string.h>

static const char *const usage =
    "usage: vmsync key generate REPO [--force] [--json]\n"
    "       vmsync key show REPO [--json]\n"
    "\n"
    "generate makes REPO's signing key (Ed25519), kept in REPO's folder (mode 0600);\n"
    "every version recorded from then on is signed with it, on the server for\n"
    "ssh:// clients.  An existing key is kept unless --force (versions it signed\n"
    "then verify only for clients that still trust it); REPO is a local folder:\n"
    "run it on the server.  show prints the public key as one line that --trust\n"
    "reads (vmsync key show REPO > office.pub), and its fingerprint on stderr;\n"
    "over ssh:// the agent sends it.\n"
    "\n"
    "      --force            generate: replace an existing key\n"
    "      --json             one JSON document: key, fingerprint, comment\n"
    "  -h, --help             this help\n"
    "\n" CLI_REMOTE_HELP;

static void print_key(const struct vms_public_key *k, bool json)
{
    char line[VMS_KEY_LINE_MAX], fp[VMS_FINGERPRINT_TEXT_LEN];
    vms_public_key_line(k, line);
    vms_fingerprint_text(k->fingerprint, fp);
    if (json) {
        fputc('{', stdout);
        vms_json_member(stdout, "key", line);
        fprintf(stdout, ",\"fingerprint\":\"%s\",", fp);
        vms_json_member(stdout, "comment", k->comment);
        fputs("}\n", stdout);
        return;
    }
    printf("%s\n", line);
    fprintf(stderr, "%s %s\n", fp, k->comment);
}

int cmd_key(int argc, char **argv)
{
    static const struct option opts[] = {{"force", no_argument, 0, 'f'},
                                         {"json", no_argument, 0, 'j'},
                                         {"help", no_argument, 0, 'h'},
                                         CLI_REMOTE_OPTIONS,
                                         {0, 0, 0, 0}};
    bool force = false, json = false;
    struct vms_remote_opts remote = {0};
    cli_remote_init(&remote);
    int opt, why;
    while ((opt = getopt_long(argc, argv, "hi:", opts, NULL)) != -1) {
        if (opt == 'h')
            return fputs(usage, stdout), 0;
        if (opt == 'f')
            force = true;
        else if (opt == 'j')
            json = true;
        else if ((why = cli_remote_option(&remote, opt, usage)) != 0)
            return why == 2 ? 2 : cli_bad_option(usage, argv);
    }
    int took = cli_take_repo(argc, argv, 1, 2, 2, usage);
    if (took >= 0)
        return took;
    if (argc - optind != 2)
        return cli_usage_error(usage, "%s", "key needs generate or show, and REPO");
    const char *what = argv[optind], *repo = argv[optind + 1];
    bool generate = !strcmp(what, "generate");
    if (!generate && strcmp(what, "show"))
        return cli_usage_error(usage, "unknown key command '%s'", what);
    if (force && !generate)
        return cli_usage_error(usage, "%s", "only key generate takes --force");
    fsp_error err = {0};
    vms_client *c = NULL;
    struct vms_public_key k;
    int rc = cli_client_open(repo, &(struct vms_client_opts){.remote = &remote}, &c, &err);
    if (!rc)
        rc = generate ? vms_key_generate(c, force, &k, &err) : vms_key_show(c, &k, &err);
    cli_client_close(&c);
    if (rc)
        return cli_report(&err);
    print_key(&k, json);
    return 0;
}
