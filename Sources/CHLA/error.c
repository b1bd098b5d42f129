/* Thread-local last-error message for hla_last_error(). Private to libhla.so (hidden visibility). */
#include "hla_private.h"
#include <string.h>

static _Thread_local char hla_error_message[512];

void hla_private_set_error(const char *message) {
    if (message == NULL) { hla_error_message[0] = 0; return; }
    size_t n = strlen(message);
    if (n >= sizeof hla_error_message) n = sizeof hla_error_message - 1;
    memcpy(hla_error_message, message, n);
    hla_error_message[n] = 0;
}

const char *hla_private_get_error(void) { return hla_error_message; }
