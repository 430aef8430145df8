// Every API error code as a sentence a person can act on (docs/openapi.yaml lists the codes).
// Screens add their own through their `errors` table; sentence() never shows raw JSON or a stack.

const SENTENCES = {
  // Reaching the API
  network_error: 'We could not reach Purse. Check your connection and try again.',
  bad_response: 'Something unexpected came back. Please try again.',
  route_not_found: 'This part of Purse is not available right now.',
  method_not_allowed: 'This part of Purse is not available right now.',
  too_many_requests: 'Purse is very busy. Wait a moment and try again.',
  internal_error: 'Something went wrong on our side. Please try again in a moment.',
  temporarily_unavailable: 'Purse is briefly busy. Nothing was changed; try again in a moment.',
  payload_too_large: 'That is too much to send at once. Shorten what you typed.',
  unsupported_media_type: 'The app sent a request Purse does not understand. Reload the page and try again.',
  malformed_json: 'The app sent a request Purse does not understand. Reload the page and try again.',
  invalid_request: 'Some of the details are missing or not valid. Check the form and try again.',
  // Signing in
  unauthorized: 'Please sign in again.',
  token_expired: 'Your session has expired. Please sign in again.',
  invalid_refresh_token: 'Your session has ended. Please sign in again.',
  refresh_token_reused: 'For your safety this session was ended. Please sign in again.',
  session_revoked: 'You were signed out. Please sign in again.',
  forbidden: 'Your account is not allowed to do this.',
  insufficient_scope: 'Your account is not allowed to do this.',
  invalid_credentials: 'The e-mail or the password is not right.',
  too_many_attempts: 'Too many sign-in attempts. Wait 15 minutes and try again.',
  invalid_email: 'Enter an e-mail address like name@example.com.',
  weak_password: 'Choose a stronger password: at least 10 characters, not a common password and not your e-mail name.',
  email_taken: 'An account with this e-mail already exists. Sign in instead.',
  invalid_referral_code: 'A referral code has 8 letters and digits, like K7M2-QX9D. Check it or leave it empty.',
  unknown_referral_code: 'No one has this referral code. Check it or leave it empty.',
  not_found: 'We could not find that. It may have been removed.',
  user_not_found: 'There is no such user.',
  // Money
  idempotency_key_required: 'The app could not send this safely. Reload the page and try again.',
  invalid_idempotency_key: 'The app could not send this safely. Reload the page and try again.',
  idempotency_key_reused: 'This request was already sent with other details. Reload the page and try again.',
  idempotency_request_in_progress: 'Your earlier request is still being processed. Wait a second and try again.',
  invalid_amount: 'Enter an amount greater than zero, like 25 or 25.50.',
  too_many_decimals: 'Use at most 2 decimal places, like 25.50.',
  amount_below_minimum: 'That amount is below the minimum. Enter a larger amount.',
  amount_above_maximum: 'That amount is above the maximum. Enter a smaller amount.',
  daily_limit_exceeded: 'This would go over your daily limit. Try a smaller amount or try again tomorrow.',
  payment_provider_unavailable: 'The payment service is not answering. Nothing was charged; try again in a minute.',
  provider_rejected: 'The payment service refused this request. Nothing was charged; check the details and try again.',
  insufficient_funds: 'You do not have enough coins available for this.',
  wallet_restricted: 'Your wallet is restricted because a payment was reversed. Please contact support.',
  invalid_filter: 'One of the filters is not valid. Check the dates and try again.',
  invalid_limit: 'That page size is not allowed.',
  invalid_cursor: 'The list changed. Start again from the first page.',
  invalid_direction: 'Choose whether to add or take coins.',
  invalid_month: 'Choose a valid month.',
  // Bank accounts and withdrawals
  bank_account_cooling_off: 'This bank account was added recently. For your safety, you can withdraw to it a little later.',
  bank_account_exists: 'This bank account is already on your list.',
  bank_account_not_found: 'We could not find that bank account. It may have been removed.',
  invalid_bank_account_id: 'Choose one of your bank accounts.',
  too_many_bank_accounts: 'You have the most bank accounts allowed. Remove one before adding another.',
  invalid_account_holder: 'Enter the account holder name as the bank has it.',
  invalid_account_number: 'Enter the account number: digits only.',
  invalid_account_type: 'Choose the account type.',
  invalid_branch_code: 'Enter the 6-digit branch code.',
  withdrawal_not_cancellable: 'This withdrawal is already on its way and can no longer be cancelled.',
  refund_not_confirmed: 'The payment service has not confirmed the refund yet. Try again later.',
  // KYC
  kyc_required: 'Verify your identity first (KYC), then try again.',
  kyc_pending: 'Your identity check is still in progress. Wait for the result before sending it again.',
  kyc_already_verified: 'Your identity is already verified.',
  kyc_not_pending: 'This identity check has already been decided.',
  kyc_provider_rejected: 'The verification service could not accept these details. Check them and try again.',
  kyc_provider_unavailable: 'The verification service is not answering. Try again in a few minutes.',
  invalid_pan: 'Enter your PAN as 10 characters, like ABCDE1234F.',
  pan_already_registered: 'This PAN is already used by another account.',
  invalid_full_name: 'Enter your full name as it appears on your PAN card.',
  invalid_date_of_birth: 'Enter your date of birth.',
  underage: 'You must be 18 or older to verify your identity.',
  consent_required: 'Tick the box to agree to the identity check.',
  // Calls
  callee_not_found: 'There is no user with that id or code.',
  cannot_call_self: 'You cannot call yourself.',
  call_not_found: 'That call was not found.',
  price_out_of_range: 'Choose a price within the allowed range.',
  // The call socket's codes for a client fault (docs/websocket.md); the calls screen has the rest.
  unknown_action: 'The app sent the call service something it does not understand. Reload the page and try again.',
  invalid_message: 'The app sent the call service something it does not understand. Reload the page and try again.',
  message_too_large: 'The app sent the call service too much at once. Reload the page and try again.',
  connection_unknown: 'The call connection was lost. Reload the page to reconnect.',
  // Operators
  case_already_resolved: 'Someone has already resolved this case.',
  case_not_creditable: 'This case cannot be credited.',
  invalid_case_id: 'That case id is not valid.',
  invalid_decision: 'Choose a decision.',
  reason_required: 'Write a reason; it is kept in the audit log.',
  // Provider and game routes (not used by people, listed so nothing shows raw)
  invalid_signature: 'The request signature was not valid.',
  malformed_event: 'The event could not be read.',
  game_session_conflict: 'This game session was already used with other details.',
  invalid_game_session_id: 'That game session id is not valid.',
};

const extra = {};

/** Adds a screen's sentences (its `errors` table) for codes the shell has no sentence for. */
export function addSentences(table) {
  Object.assign(extra, table || {});
}

/**
 * The sentence for `code`: the current screen's own (`screenTable`) first, then the shell's, then
 * any other screen's; `fallback` (or a generic sentence) when none is known.
 */
export function sentence(code, fallback, screenTable) {
  return (screenTable && screenTable[code]) || SENTENCES[code] || extra[code] || fallback || 'Something went wrong. Please try again.';
}

/** Every code that has a sentence (for tests and docs). */
export const knownCodes = () => Object.keys({ ...SENTENCES, ...extra });
