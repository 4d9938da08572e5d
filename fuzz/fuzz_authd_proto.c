/*
 * fuzz_authd_proto.c: the decoder of the auth channel (lib/authd/proto.c),
 * which the auth process runs on frames from workers that may be
 * compromised. Checks: the decoder never reads past the input (libFuzzer
 * hands it a buffer of exactly its size, so ASan reports any read past
 * it); "need more" is only answered for a prefix of a frame; a decoded
 * frame encodes back to the same bytes (one spelling per message), and
 * what it consumed is within the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/authd/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct authd_msg m;
	str_t again = STR_INIT;
	size_t used;
	int r;

	while (size > 0) {
		r = authd_decode(data, size, &m, &used);
		if (r == 0) {
			if (used != 0)
				abort();
			break;
		}
		if (r < 0)
			break;
		if (used == 0 || used > size)
			abort();
		if (authd_encode(&again, &m) != 0 || again.len != used ||
		    memcmp(again.data, data, used) != 0)
			abort();
		authd_buf_wipe(&again);
		authd_msg_clear(&m);
		data += used;
		size -= used;
	}
	return 0;
}
