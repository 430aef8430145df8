// Every screen the shell mounts, in navigation order. Each module's default export follows the
// contract in web/README.md.
import auth, { signup } from './auth.js';
import wallet from './wallet.js';
import deposit from './deposit.js';
import history from './history.js';
import kyc from './kyc.js';
import bank from './bank.js';
import withdrawals from './withdrawals.js';
import referrals from './referrals.js';
import calls from './calls.js';
import admin from './admin.js';

export default [auth, signup, wallet, deposit, history, kyc, bank, withdrawals, referrals, calls, admin].filter(Boolean);
