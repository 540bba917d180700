/** Registers the built-in load balancers (import for its side effect). */

import './lb-round-robin.js';
import './lb-least-request.js';
import './lb-random.js';
