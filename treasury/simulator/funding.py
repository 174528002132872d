"""Money leaving or entering the user: VA withdrawals, fiat withdrawals, deposits, wallet proofs.

Withdrawals advance through ``settings.withdraw_statuses`` (fiat: ``fiat_withdraw_statuses``)
as the simulator clock moves; the status is computed when read, so nothing runs in the
background. Funds (quantity + fee) leave the free balance when the withdrawal is accepted.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from treasury.simulator.ledger import Ledger, amt
from treasury.simulator.protocol import ApiError, invalid, missing
from treasury.simulator.state import CoinSpec, StatusStep, WhitelistEntry

FINAL_STATUSES = ("successful", "failed")
STATUS_CODES = {"under_review": 1, "processing": 2, "successful": 4, "failed": 3}


def status_at(steps: list[StatusStep], created_ms: int, now_ms: int) -> tuple[str, int]:
    """The status a record created at ``created_ms`` has at ``now_ms``, and since when."""
    status, since = steps[0].status, created_ms
    for step in steps:
        at = created_ms + int(step.after_seconds * 1000)
        if at <= now_ms:
            status, since = step.status, at
    return status, since


def _digest(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def wallet_signature(address: str, message: str) -> str:
    """The stand-in wallet signature walletSigning accepts: hex HMAC-SHA256 keyed by the address."""
    return hmac.new(address.encode(), message.encode(), hashlib.sha256).hexdigest()


def chain_address(chain: str, seed: str) -> str:
    """A deterministic, chain-flavoured address derived from ``seed``."""
    digest = _digest(seed)
    if chain == "Bitcoin":
        return "bc1q" + digest[:38]
    if chain == "Tron":
        return "T" + digest[:33]
    return "0x" + digest[:40]


@dataclass
class Withdrawal:
    order_id: str
    client_order_id: str
    account_id: str
    coin: str
    chain: str
    address: str
    address_ext: str
    quantity: Decimal
    fee: Decimal
    remark: str
    time_ms: int
    flow_id: int
    balance_after: Decimal
    api_key: str
    status: str = "processing"
    status_since: int = 0

    @property
    def tx_id(self) -> str:
        return _digest("tx", self.order_id) if self.status == "successful" else ""

    def json(self) -> dict[str, Any]:
        """A withdrawOrders item (HashKey Global shape plus clientOrderId, chainType and status)."""
        return {
            "time": str(self.time_ms),
            "id": self.order_id,
            "clientOrderId": self.client_order_id,
            "accountId": self.account_id,
            "coin": self.coin,
            "coinId": self.coin,
            "coinName": self.coin,
            "chainType": self.chain,
            "address": self.address,
            "addressExt": self.address_ext,
            "quantity": amt(self.quantity),
            "arriveQuantity": amt(self.quantity),
            "status": self.status,
            "statusCode": STATUS_CODES.get(self.status, 0),
            "txId": self.tx_id,
            "addressUrl": self.address,
            "feeCoinId": self.coin,
            "feeCoinName": self.coin,
            "fee": amt(self.fee),
            "remark": self.remark,
            "platform": "",
            "updateTime": str(self.status_since),
        }

    def flow(self) -> dict[str, Any]:
        return {
            "id": str(self.flow_id),
            "accountId": self.account_id,
            "type": "Withdraw",
            "netVaAmount": amt(self.quantity),
            "vaCcy": self.coin,
            "vaChainType": self.chain,
            "vaBalance": amt(self.balance_after),
            "fee": amt(self.fee),
            "feeCcy": self.coin,
            "orderId": self.order_id,
            "txnId": self.tx_id,
            "remark": self.remark,
            "transactTime": str(self.status_since),
            "clientOrderId": self.client_order_id,
        }


@dataclass
class FiatWithdrawal:
    order_id: str
    client_order_id: str
    account_id: str
    asset: str
    amount: Decimal
    fee: Decimal
    bank_account: str
    remark: str
    time_ms: int
    flow_id: int
    balance_after: Decimal
    api_key: str
    status: str = "under_review"
    status_since: int = 0

    def json(self) -> dict[str, Any]:
        """A fiat/history item; for withdrawals netAmount = grossAmount + fee."""
        return {
            "orderId": self.order_id,
            "type": "withdraw",
            "remark": self.remark,
            "asset": self.asset,
            "grossAmount": amt(self.amount),
            "netAmount": amt(self.amount + self.fee),
            "fee": amt(self.fee),
            "status": self.status,
            "createdTime": str(self.time_ms),
            "updatedTime": str(self.status_since),
            "channel": "auto",
            "clientOrderId": self.client_order_id,
            "bankAccount": self.bank_account,
            "accountId": self.account_id,
        }

    def flow(self) -> dict[str, Any]:
        return {
            "id": str(self.flow_id),
            "accountId": self.account_id,
            "type": "fiatWithdraw",
            "netFiatAmount": amt(self.amount),
            "fiatCcy": self.asset,
            "fiatBalance": amt(self.balance_after),
            "fee": amt(self.fee),
            "feeCcy": self.asset,
            "orderId": self.order_id,
            "remark": self.remark,
            "transactTime": str(self.status_since),
            "clientOrderId": self.client_order_id,
        }


@dataclass
class Deposit:
    order_id: str
    account_id: str
    coin: str
    chain: str
    address: str
    quantity: Decimal
    time_ms: int
    flow_id: int
    balance_after: Decimal

    def json(self) -> dict[str, Any]:
        return {
            "time": str(self.time_ms),
            "depositOrderId": self.order_id,
            "clientOrderId": "",
            "accountId": self.account_id,
            "coin": self.coin,
            "coinName": self.coin,
            "chainType": self.chain,
            "address": self.address,
            "addressExt": "",
            "quantity": amt(self.quantity),
            "status": 4,
            "statusCode": "4",
            "refundCode": "",
            "refundReason": "",
            "txId": _digest("deposit", self.order_id),
        }

    def flow(self) -> dict[str, Any]:
        return {
            "id": str(self.flow_id),
            "accountId": self.account_id,
            "type": "Deposit",
            "netVaAmount": amt(self.quantity),
            "vaCcy": self.coin,
            "vaChainType": self.chain,
            "vaBalance": amt(self.balance_after),
            "fee": "0",
            "feeCcy": self.coin,
            "orderId": self.order_id,
            "txnId": _digest("deposit", self.order_id),
            "remark": "",
            "transactTime": str(self.time_ms),
            "clientOrderId": "",
        }


@dataclass
class WalletSigning:
    id: str
    coin: str
    chain: str
    address: str
    message: str
    time_ms: int
    whitelisted: bool
    api_key: str

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "coin": self.coin,
            "chainType": self.chain,
            "address": self.address,
            "message": self.message,
            "time": str(self.time_ms),
            "whitelisted": self.whitelisted,
            "apiKey": self.api_key,
        }


class Funding:
    """VA and fiat withdrawals, deposits, deposit addresses, the whitelist and wallet proofs."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.reset()

    def reset(self) -> None:
        with self.ledger.lock:
            cfg = self.ledger.cfg
            self.coins: dict[str, CoinSpec] = cfg.effective_coins()
            self.whitelist: list[WhitelistEntry] = [e.model_copy() for e in cfg.withdraw_whitelist]
            self.withdrawals: list[Withdrawal] = []
            self.fiat_withdrawals: list[FiatWithdrawal] = []
            self.deposits: list[Deposit] = []
            self.signings: list[WalletSigning] = []
            self.ledger.touch()

    # ------------------------------------------------------------------ coins

    def chain_of(self, coin: str, chain: str | None, *, param: str = "chainType") -> tuple[CoinSpec, str]:
        """Resolve (coin, chainType); a single-chain coin needs no chainType."""
        spec = self.coins.get(coin)
        if spec is None:
            raise ApiError("-1169", f"Withdraw not allowed: unknown coin {coin}")
        if chain is None:
            if len(spec.chains) > 1:
                raise missing(param)
            return spec, spec.chains[0].chain
        if spec.chain(chain) is None:
            raise invalid(param, f"{coin} has no chain {chain!r} ({', '.join(c.chain for c in spec.chains)})")
        return spec, chain

    def whitelisted(self, coin: str, chain: str, address: str) -> bool:
        return any(e.coin == coin and e.chain == chain and e.address == address for e in self.whitelist)

    def refresh(self) -> None:
        """Bring withdrawal statuses up to the clock (called under the lock before any read)."""
        now = self.ledger.now_ms()
        settings = self.ledger.cfg.settings
        for w in self.withdrawals:
            if w.status not in FINAL_STATUSES:
                w.status, w.status_since = status_at(settings.withdraw_statuses, w.time_ms, now)
        for f in self.fiat_withdrawals:
            if f.status not in FINAL_STATUSES:
                f.status, f.status_since = status_at(settings.fiat_withdraw_statuses, f.time_ms, now)

    # ------------------------------------------------------------------ VA withdrawals

    def withdraw(
        self,
        *,
        api_key: str,
        account_id: str,
        coin: str,
        chain: str | None,
        address: str,
        address_ext: str,
        quantity: Decimal,
        client_order_id: str | None,
        remark: str,
    ) -> Withdrawal:
        """Withdraw to a whitelisted address; quantity + fee leave the free balance."""
        led = self.ledger
        with led.atomic():
            spec, chain_name = self.chain_of(coin, chain)
            chain_spec = spec.chain(chain_name)
            assert chain_spec is not None
            if not chain_spec.allow_withdraw:
                raise ApiError("-1169", f"Withdraw not allowed for {coin} on {chain_name}")
            if not self.whitelisted(coin, chain_name, address):
                raise ApiError("-1171", "Withdrawal address is not in the whitelist")
            if quantity < chain_spec.min_withdraw:
                raise ApiError("-1167", f"Below the minimum withdrawal quantity {amt(chain_spec.min_withdraw)}")
            if chain_spec.max_withdraw is not None and quantity > chain_spec.max_withdraw:
                raise ApiError("-1166", f"Exceeds the maximum withdrawal quantity {amt(chain_spec.max_withdraw)}")
            led.check_client_id("withdraw", client_order_id)
            led.debit(account_id, coin, quantity + chain_spec.withdraw_fee)
            now = led.now_ms()
            steps = led.cfg.settings.withdraw_statuses
            status, since = status_at(steps, now, now)
            record = Withdrawal(
                order_id=led.new_id("W"),
                client_order_id=client_order_id or "",
                account_id=account_id,
                coin=coin,
                chain=chain_name,
                address=address,
                address_ext=address_ext,
                quantity=quantity,
                fee=chain_spec.withdraw_fee,
                remark=remark,
                time_ms=now,
                flow_id=led.new_seq(),
                balance_after=led.balance(account_id, coin).total,
                api_key=api_key,
                status=status,
                status_since=since,
            )
            self.withdrawals.append(record)
            led.remember_client_id("withdraw", client_order_id, record)
            return record

    def withdraw_orders(
        self,
        *,
        coin: str | None,
        start_ms: int | None,
        end_ms: int | None,
        limit: int,
        client_id: str | None,
        order_id: str | None,
    ) -> list[Withdrawal]:
        with self.ledger.atomic():
            self.refresh()
            rows = [
                w
                for w in self.withdrawals
                if (coin is None or w.coin == coin)
                and (start_ms is None or w.time_ms >= start_ms)
                and (end_ms is None or w.time_ms <= end_ms)
                and (client_id is None or w.client_order_id == client_id)
                and (order_id is None or w.order_id == order_id)
            ]
            return sorted(rows, key=lambda w: w.flow_id, reverse=True)[:limit]

    # ------------------------------------------------------------------ fiat

    def fiat_withdraw(
        self,
        *,
        api_key: str,
        key_account: str,
        asset: str,
        amount: Decimal,
        bank_account: str,
        client_order_id: str | None,
        remark: str,
    ) -> FiatWithdrawal:
        """Withdraw fiat to a bank account from the fiat account (the key's own if it is one)."""
        led = self.ledger
        settings = led.cfg.settings
        with led.atomic():
            if asset not in settings.fiat_assets:
                raise ApiError("-4001", f"Invalid asset {asset}; fiat assets are {', '.join(settings.fiat_assets)}")
            if amount < settings.fiat_withdraw_min:
                raise ApiError("-4002", f"Below the minimum withdrawal amount {amt(settings.fiat_withdraw_min)}")
            banks = led.cfg.fiat_bank_accounts
            if banks is not None and bank_account not in banks:
                raise ApiError("-4004", f"Invalid bank account {bank_account!r}")
            account_id = self._fiat_account(key_account)
            led.check_client_id("fiat_withdraw", client_order_id)
            fee = settings.fiat_withdraw_fee
            led.debit(account_id, asset, amount + fee, code="-4003", msg="Insufficient balance")
            now = led.now_ms()
            status, since = status_at(settings.fiat_withdraw_statuses, now, now)
            record = FiatWithdrawal(
                order_id=led.new_id("FW"),
                client_order_id=client_order_id or "",
                account_id=account_id,
                asset=asset,
                amount=amount,
                fee=fee,
                bank_account=bank_account,
                remark=remark,
                time_ms=now,
                flow_id=led.new_seq(),
                balance_after=led.balance(account_id, asset).total,
                api_key=api_key,
                status=status,
                status_since=since,
            )
            self.fiat_withdrawals.append(record)
            led.remember_client_id("fiat_withdraw", client_order_id, record)
            return record

    def _fiat_account(self, key_account: str) -> str:
        accounts = self.ledger.accounts
        if key_account in accounts and accounts[key_account].type == "fiat":
            return key_account
        for acct in accounts.values():
            if acct.type == "fiat":
                return acct.id
        raise ApiError("-2024", "Fiat account does not exist")

    def fiat_history(
        self,
        *,
        kind: str,
        status: str | None,
        start_ms: int | None,
        end_ms: int | None,
        client_id: str | None,
        remark: str | None,
        limit: int,
    ) -> list[FiatWithdrawal]:
        if kind != "withdraw":
            return []
        with self.ledger.atomic():
            self.refresh()
            rows = [
                f
                for f in self.fiat_withdrawals
                if (status is None or f.status == status)
                and (start_ms is None or f.time_ms >= start_ms)
                and (end_ms is None or f.time_ms <= end_ms)
                and (client_id is None or f.client_order_id == client_id)
                and (remark is None or f.remark == remark)
            ]
            return sorted(rows, key=lambda f: f.flow_id, reverse=True)[:limit]

    # ------------------------------------------------------------------ deposits

    def deposit(
        self, *, account_id: str, coin: str, quantity: Decimal, chain: str | None = None, address: str = ""
    ) -> Deposit:
        """Credit an incoming on-chain deposit (a simulator control, not an API endpoint)."""
        led = self.ledger
        with led.atomic():
            led.account(account_id)
            _, chain_name = self.chain_of(coin, chain)
            led.credit(account_id, coin, quantity)
            record = Deposit(
                order_id=led.new_id("D"),
                account_id=account_id,
                coin=coin,
                chain=chain_name,
                address=address or chain_address(chain_name, f"ext|{coin}|{chain_name}"),
                quantity=quantity,
                time_ms=led.now_ms(),
                flow_id=led.new_seq(),
                balance_after=led.balance(account_id, coin).total,
            )
            self.deposits.append(record)
            return record

    def deposit_address(self, account_id: str, coin: str, chain: str) -> dict[str, Any]:
        """The account's deposit address for (coin, chainType): stable and deterministic."""
        spec, chain_name = self.chain_of(coin, chain)
        chain_spec = spec.chain(chain_name)
        assert chain_spec is not None
        seed = f"deposit|{self.ledger.cfg.settings.user_id}|{account_id}|{coin}|{chain_name}"
        return {
            "canDeposit": chain_spec.allow_deposit,
            "address": chain_address(chain_name, seed),
            "addressExt": "",
            "minQuantity": amt(chain_spec.min_deposit),
            "needAddressTag": False,
            "requiredConfirmTimes": chain_spec.confirmations,
            "canWithdrawConfirmTimes": chain_spec.confirmations,
            "coinType": "ERC20_TOKEN" if chain_name == "ETH" and coin != "ETH" else "CHAIN_TOKEN",
            "coin": coin,
            "chainType": chain_name,
        }

    # ------------------------------------------------------------------ wallet ownership

    def wallet_signing(
        self, *, api_key: str, coin: str, chain: str, address: str, message: str, signature: str
    ) -> WalletSigning:
        """Verify the stand-in wallet signature; on success optionally whitelist the address."""
        led = self.ledger
        with led.atomic():
            _, chain_name = self.chain_of(coin, chain)
            expected = wallet_signature(address, message)
            given = signature.lower().removeprefix("0x")
            if not hmac.compare_digest(expected.encode(), given.encode("utf-8", errors="replace")):
                raise ApiError("-1179", "Address owner is not true: the wallet signature does not verify")
            add = led.cfg.settings.wallet_signing_whitelists and not self.whitelisted(coin, chain_name, address)
            if add:
                self.whitelist.append(
                    WhitelistEntry(coin=coin, chain=chain_name, address=address, label="walletSigning")
                )
                led.touch()
            record = WalletSigning(
                id=led.new_id("WS"),
                coin=coin,
                chain=chain_name,
                address=address,
                message=message,
                time_ms=led.now_ms(),
                whitelisted=led.cfg.settings.wallet_signing_whitelists,
                api_key=api_key,
            )
            self.signings.append(record)
            return record

    def verify_info(self, coin: str, chain: str, address: str) -> dict[str, Any]:
        """Micro-payment verification: where to send how much (deterministic per address)."""
        _, chain_name = self.chain_of(coin, chain)
        digest = _digest("verify", self.ledger.cfg.settings.user_id, coin, chain_name, address)
        amount = Decimal(int(digest[:6], 16) % 9000 + 1000) / Decimal(10**6)
        return {
            "coin": coin,
            "chainType": chain_name,
            "walletAddress": address,
            "address": chain_address(chain_name, "verify|" + digest),
            "addressExt": "",
            "amount": amt(amount),
        }
